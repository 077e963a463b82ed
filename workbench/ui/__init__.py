"""The app's widgets: the only part of the library that imports Streamlit, and all that pages import.

One module per page (``home``, ``evalsets``, ``configs``, ``runs``, ``compare``, ``embedding``, ``mismatches``,
``reports``, ``search``), widgets shared by pages (``explain``: the explanation panel of Mismatches cards and the
detail view; ``robustness``: Compare's robustness section; ``detail``: the per-item dialog any card or point
opens; ``selection``: tag, save or export what a filter or a lasso picked), ``common`` for what every page
shares, ``state`` for the session defaults, and ``cache``: every cached read of the app, bounded and keyed per run
or per eval set.
"""
