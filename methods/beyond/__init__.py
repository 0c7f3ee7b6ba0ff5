"""Part IV of the talk ("beyond"): deep active learning, learning from few clean and many noisy labels
(GCN), nano-supervised object detection, asymmetric metric learning. (Adversarial attacks, also
Part IV, have their own room: methods/attacks/.)"""
