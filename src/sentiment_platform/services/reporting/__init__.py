"""What the API reports: metrics from the rollups, and exports."""
