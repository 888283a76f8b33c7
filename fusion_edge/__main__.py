"""``python -m fusion_edge`` runs the CLI (and ``torchrun -m fusion_edge train ...`` trains with DDP)."""

from fusion_edge.cli import main

if __name__ == "__main__":
    main()
