"""File input/output: atomic writes, manifests, image inputs."""
