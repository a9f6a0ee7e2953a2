//! aetherv-winrm (in progress)
