"""The peers, side by side with workhorse: ``python -m bench.peers``.

Each peer has one small module here (``arq_peer``, ``saq_peer`` ...) that uses its library's
documented fastest settings. Those modules run only inside ``.venv-peers`` (made by the
runner from ``requirements.txt``), driven by ``bench.peers.child``; the runner itself,
``bench.peers.__main__``, runs in the project's ``.venv`` and measures workhorse in the
same run so every ratio compares figures taken minutes apart on the same servers.
"""
