"""Agent installers: /install.sh, /install.ps1 and the agent wheel they install."""
