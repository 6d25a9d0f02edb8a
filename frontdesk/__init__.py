"""Frontdesk: the Instagram front desk for clinics."""
