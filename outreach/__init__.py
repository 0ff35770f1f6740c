"""Beyond the office (issue 16): the resident told when the carer is late, family and the
council told when a visit is missed, family and commissioners each shown what they are
entitled to, and quality calls. Tables in :mod:`outreach.models`, settings in
:mod:`outreach.config`; the web pages are ``web.family``, ``web.council`` and
``web.outreach_office``.
"""
