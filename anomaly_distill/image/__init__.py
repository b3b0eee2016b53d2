"""The image kind: image sets and textures, the teacher → student pipeline for images."""
