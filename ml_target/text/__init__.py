"""Pure host-side text processing, no device: CLIP/SigLIP cleaning, tokenisation and text-encoder host parts; the OCR dictionary."""
