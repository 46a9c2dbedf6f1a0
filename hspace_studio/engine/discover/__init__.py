"""Ways to find directions in h-space: PCA, Jacobian, supervised."""
