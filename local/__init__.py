"""The local stack: template.yaml's resources on moto, plus emulators for what moto does not run."""
