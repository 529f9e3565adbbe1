//! kind on a GPU workstation.
