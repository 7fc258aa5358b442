//! Socket calls monoio does not offer, on descriptors its streams own.

use std::os::fd::RawFd;

/// Shuts the socket's receive side, so a read pending on it completes with
/// what had arrived, or with end of stream. Writing still works.
pub fn shut_receive(fd: RawFd) {
    // SAFETY: `shutdown` takes no memory from us; `fd` is an open socket
    // owned by a live monoio stream.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

/// Whether an idle connection can still carry a request: nothing to read
/// and no end of stream (a peer that closed it shows as a readable EOF).
/// One non-blocking peek; the caller's buffers are not touched.
pub fn idle_socket_open(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most 1 byte into `byte`, which lives for
    // the call; `fd` is an open socket owned by a live monoio stream.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}
