print("incidentbench: not yet")
