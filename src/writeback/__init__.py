"""writeback: write Microsoft Entra ID cloud groups back into on-premises Active Directory."""

__version__ = "0.1.0"
__all__ = ["__version__"]
