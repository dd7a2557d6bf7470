"""Software inventory: what is installed on each agent's machine (``agent_software_inventory``)."""
