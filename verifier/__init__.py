"""A generative verifier that judges whether a trajectory's final patch resolves its task."""
