"""The pure core: notebook in, validated pipeline spec out. Stdlib + nbformat only."""
