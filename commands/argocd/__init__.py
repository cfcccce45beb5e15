"""Argo CD: the async REST client and the Application model read from its payloads. May import commands' base modules (errors, validation, results) only."""
