//! rke2 servers and agents over SSH.
