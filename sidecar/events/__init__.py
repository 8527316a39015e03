"""Pure core: what happened (inference) and how Harbor words it (payloads). No I/O here."""
