"""The hall's statistics (issue 14 item 4, decision 46): the service records by service
and month (status, online completion, counter visits, satisfaction) and the sign-ins
by method and real-name level (``services``), as JSON and CSV (``export``), and the
staff pages with server-drawn SVG charts (``views``, ``charts``)."""
