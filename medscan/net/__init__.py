"""medscan as a DICOM network node: echo, query, retrieve and send as an SCU, and a Storage SCP listener.

Built on pynetdicom; nothing here imports Qt, torch or MONAI (the ``pacs`` commands stay light). Every
failure a person can act on is a ``MedscanError`` naming the node, so the CLI prints one line.
"""
