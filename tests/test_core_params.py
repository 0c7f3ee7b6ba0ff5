import pytest

from visrep.errors import UserError
from visrep.params import Param, resolve_params

PARAMS = (
    Param("k", int, 50, low=1),
    Param("alpha", float, 0.99, low=0, high=1, open_low=True, open_high=True),
    Param("metric", str, "ip", choices=("ip", "l2")),
    Param("flag", bool, False),
    Param("topk", int, None, low=1),
)


def test_defaults_filled_and_strings_coerced():
    cfg = resolve_params(PARAMS, {"k": "30", "alpha": "0.5", "flag": "yes"}, "method 'x'")
    assert cfg == {"k": 30, "alpha": 0.5, "metric": "ip", "flag": True, "topk": None}


@pytest.mark.parametrize("given, fragment", [
    ({"k": "abc"}, "parameter 'k' of method 'x' must be a int >= 1, got 'abc'"),
    ({"k": 0}, ">= 1, got 0"),
    ({"k": 2.5}, "got 2.5"),
    ({"alpha": 1.0}, "> 0 and < 1, got 1.0"),
    ({"alpha": "nan"}, "got 'nan'"),
    ({"alpha": "inf"}, "parameter 'alpha' of method 'x' must be a finite float > 0 and < 1, got 'inf'"),
    ({"metric": "cosine"}, "one of ip, l2"),
    ({"flag": "maybe"}, "parameter 'flag'"),
    ({"kk": 3}, "has no parameter 'kk' (did you mean: k?)"),
    ({"k": None}, "got None"),
])
def test_bad_values_name_the_parameter(given, fragment):
    with pytest.raises(UserError) as e:
        resolve_params(PARAMS, given, "method 'x'")
    assert fragment in str(e.value)


def test_none_allowed_only_when_default_is_none():
    assert resolve_params(PARAMS, {"topk": "none"}, "m")["topk"] is None
    assert resolve_params(PARAMS, {"topk": "7"}, "m")["topk"] == 7
