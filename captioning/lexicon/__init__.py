"""Word tables the captioner reads: which words may end a caption, and which caption words name the
classes an encoder's classifier knows. Plain TSV files beside this module, derived or reviewed by hand."""
