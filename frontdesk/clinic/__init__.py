"""Clinic records: doctors, Instagram connections, patients, conversations and messages."""
