"""Reading the videos and images of a sample the way Video-R1's evaluation reads them.

* :mod:`.files`: which file a record's video path means (the one place for the same-stem fallback to
  another container); no heavy imports, used by the task loader, the backend and the data check.
* :mod:`.protocol`: Video-R1's rules for how many frames, which ones and at what size (pure
  arithmetic, docs/method.md §3).
* :mod:`.reader`: decoding with decord, resizing with torchvision, and a clear per-sample
  :class:`~lmms_vreason.media.reader.MediaError` naming the first real cause when a file is broken.

Importing this package imports none of them (no torch, no decoder).
"""
