"""What the endpoint-management connectors (Jamf, Intune, Linux fleet) share.

* :mod:`.export`: the endpoint publication event, checked, and the governed runtime configuration derived
  from it (its digest and its macOS configuration profile);
* :mod:`cavra.connectors.flow` (shared with ServiceNow): the state of a multi-step publication (token,
  look-up, write, assign, verify) and the token handling around it (cached token, refetch once on a 401).
"""
