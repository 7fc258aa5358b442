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

/// Raises the soft open-file limit to the hard one; returns the soft limit
/// in force afterwards.
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit`/`setrlimit` read and write the one struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Whether an I/O error means the process or system is out of descriptors.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
