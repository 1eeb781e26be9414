//! Go's `os.FileMode`: converting Unix `st_mode` to it and back, and its
//! `String()` form, which `/ls` lines must reproduce byte for byte.

/// Go `ModeDir`.
pub const MODE_DIR: u32 = 1 << 31;
/// Go `ModeAppend`.
pub const MODE_APPEND: u32 = 1 << 30;
/// Go `ModeExclusive`.
pub const MODE_EXCLUSIVE: u32 = 1 << 29;
/// Go `ModeTemporary`.
pub const MODE_TEMPORARY: u32 = 1 << 28;
/// Go `ModeSymlink`.
pub const MODE_SYMLINK: u32 = 1 << 27;
/// Go `ModeDevice`.
pub const MODE_DEVICE: u32 = 1 << 26;
/// Go `ModeNamedPipe`.
pub const MODE_NAMED_PIPE: u32 = 1 << 25;
/// Go `ModeSocket`.
pub const MODE_SOCKET: u32 = 1 << 24;
/// Go `ModeSetuid`.
pub const MODE_SETUID: u32 = 1 << 23;
/// Go `ModeSetgid`.
pub const MODE_SETGID: u32 = 1 << 22;
/// Go `ModeCharDevice`.
pub const MODE_CHAR_DEVICE: u32 = 1 << 21;
/// Go `ModeSticky`.
pub const MODE_STICKY: u32 = 1 << 20;
/// Go `ModeIrregular`.
pub const MODE_IRREGULAR: u32 = 1 << 19;
/// Go `ModeType`: the bits that make a file something other than regular.
pub const MODE_TYPE: u32 = MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR;
/// Go `ModePerm`.
pub const MODE_PERM: u32 = 0o777;

const S_IFMT: u32 = 0o170000;
const S_IFBLK: u32 = 0o060000;
const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFIFO: u32 = 0o010000;
const S_IFLNK: u32 = 0o120000;
const S_IFSOCK: u32 = 0o140000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Converts a Unix `st_mode` to Go FileMode bits, as Go's `os.Stat` does.
pub fn from_unix(st_mode: u32) -> u32 {
    let mut m = st_mode & MODE_PERM;
    m |= match st_mode & S_IFMT {
        S_IFBLK => MODE_DEVICE,
        S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        S_IFDIR => MODE_DIR,
        S_IFIFO => MODE_NAMED_PIPE,
        S_IFLNK => MODE_SYMLINK,
        S_IFSOCK => MODE_SOCKET,
        _ => 0,
    };
    if st_mode & S_ISUID != 0 {
        m |= MODE_SETUID;
    }
    if st_mode & S_ISGID != 0 {
        m |= MODE_SETGID;
    }
    if st_mode & S_ISVTX != 0 {
        m |= MODE_STICKY;
    }
    m
}

/// Converts the permission and special bits of a Go FileMode to Unix mode
/// bits (type bits are dropped), as Go's `syscallMode` does for `OpenFile`.
pub fn to_unix_perm(go_mode: u32) -> u32 {
    let mut m = go_mode & MODE_PERM;
    if go_mode & MODE_SETUID != 0 {
        m |= S_ISUID;
    }
    if go_mode & MODE_SETGID != 0 {
        m |= S_ISGID;
    }
    if go_mode & MODE_STICKY != 0 {
        m |= S_ISVTX;
    }
    m
}

/// Renders a Go FileMode exactly as Go's `FileMode.String()` does:
/// one letter per set type bit in the order `dalTLDpSugct?` (or `-` when none
/// is set), then nine `rwx` characters.
pub fn to_string(m: u32) -> String {
    const LETTERS: &[u8; 13] = b"dalTLDpSugct?";
    let mut s = String::with_capacity(12);
    for (i, c) in LETTERS.iter().enumerate() {
        if m & (1 << (31 - i)) != 0 {
            s.push(*c as char);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    const RWX: &[u8; 9] = b"rwxrwxrwx";
    for (i, c) in RWX.iter().enumerate() {
        s.push(if m & (1 << (8 - i)) != 0 {
            *c as char
        } else {
            '-'
        });
    }
    s
}

/// Reports whether a Go FileMode describes a regular file.
pub fn is_regular(m: u32) -> bool {
    m & MODE_TYPE == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_go() {
        assert_eq!(to_string(0o644), "-rw-r--r--");
        assert_eq!(to_string(MODE_DIR | 0o755), "drwxr-xr-x");
        assert_eq!(to_string(MODE_SYMLINK | 0o777), "Lrwxrwxrwx");
        assert_eq!(to_string(MODE_SETUID | 0o755), "urwxr-xr-x");
        assert_eq!(to_string(MODE_DIR | MODE_STICKY | 0o777), "dtrwxrwxrwx");
        assert_eq!(
            to_string(MODE_DEVICE | MODE_CHAR_DEVICE | 0o666),
            "Dcrw-rw-rw-"
        );
        assert_eq!(to_string(MODE_NAMED_PIPE | 0o600), "prw-------");
        assert_eq!(to_string(0), "----------");
    }

    #[test]
    fn unix_round_trip() {
        assert_eq!(from_unix(0o100644), 0o644);
        assert_eq!(from_unix(0o040755), MODE_DIR | 0o755);
        assert_eq!(from_unix(0o120777), MODE_SYMLINK | 0o777);
        assert_eq!(from_unix(0o104755), MODE_SETUID | 0o755);
        assert_eq!(from_unix(0o020666), MODE_DEVICE | MODE_CHAR_DEVICE | 0o666);
        assert_eq!(to_unix_perm(MODE_SETUID | MODE_STICKY | 0o755), 0o5755);
        assert!(is_regular(0o644));
        assert!(!is_regular(MODE_DIR | 0o755));
    }
}
