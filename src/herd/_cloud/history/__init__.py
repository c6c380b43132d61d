"""The history (Edda): every change to the cloud, kept and queried (`herd history`)."""
