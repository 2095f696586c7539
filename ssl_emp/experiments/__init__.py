"""What users run: training (pretrain / train-supervised), sweeps, comparisons and the demo."""
