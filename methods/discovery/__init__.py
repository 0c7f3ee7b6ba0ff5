"""Object discovery (Part II of the talk): feature and object saliency, EGM, saliency-weighted pooling."""
