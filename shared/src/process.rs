//! Questions about other processes by pid, answered the same way by every
//! gomote binary (the coordinator waiting for a buildlet to exit, the CLI
//! waiting for a daemon to stop).

/// Whether a process with this pid exists and is not a zombie.
///
/// A zombie has exited and only waits for its parent to reap it, so for
/// anyone waiting for a process to go away it is gone. Pids below 1 name
/// process groups or every process, never one process: they are not alive.
pub fn pid_alive(pid: i32) -> bool {
    if pid < 1 {
        return false;
    }
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        // It exists but belongs to someone we may not signal.
        Err(e) => e == nix::errno::Errno::EPERM,
    };
    exists && !zombie(pid)
}

/// Whether /proc says the process is a zombie; false where there is no
/// /proc to ask (the signal probe then decides alone).
fn zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and
        // may itself contain ") ".
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        assert!(pid_alive(i32::try_from(std::process::id()).unwrap()));
    }

    #[test]
    fn group_and_broadcast_pids_are_not_processes() {
        assert!(!pid_alive(0));
        assert!(!pid_alive(-1));
    }

    #[test]
    fn exited_child_is_gone_before_and_after_reaping() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Not reaped yet: a zombie, which counts as gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pid_alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "exited child still alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn running_child_is_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        assert!(pid_alive(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
