"""Database passphrases held in the OS keyring (Windows Credential Manager, macOS Keychain, Secret Service).

``medscan db init --keyring`` puts the passphrase there so a workstation opens its database without a
prompt or a variable in the environment; the keyring itself is unlocked by the user's OS login. The
entry is named after the database (its full path, or its URL without a password), never after a user.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from medscan.scan import MedscanError

SERVICE = "medscan"


def entry_name(target: str | Path) -> str:
    """The keyring user name for a database: absolute path, or the URL without its password."""
    text = str(target)
    if "://" in text:
        return make_url(text).render_as_string(hide_password=True)
    return str(Path(text).resolve())


def _usable_keyring():
    """The active keyring backend, or None where there is none (headless machines, CI)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    return keyring


def keyring_available() -> bool:
    """True when an OS keyring that can store secrets is available (not the fail or null backends)."""
    return _usable_keyring() is not None


def get_passphrase(target: str | Path) -> str | None:
    """The stored passphrase of ``target``; None when there is none or no keyring answers."""
    keyring = _usable_keyring()
    if keyring is None:
        return None
    try:
        return keyring.get_password(SERVICE, entry_name(target))
    except Exception:  # a locked or broken keyring must not stop a prompt from being offered
        return None


def store_passphrase(target: str | Path, passphrase: str) -> None:
    """Keep ``passphrase`` for ``target``; MedscanError when no OS keyring is available."""
    keyring = _usable_keyring()
    if keyring is None:
        raise MedscanError(target, "no OS keyring is available here; use MEDSCAN_DB_KEY or the prompt")
    try:
        keyring.set_password(SERVICE, entry_name(target), passphrase)
    except Exception as exc:
        raise MedscanError(target, f"the OS keyring refused the passphrase ({type(exc).__name__})") from None


def forget_passphrase(target: str | Path) -> bool:
    """Remove the stored passphrase of ``target``; False when there was none."""
    keyring = _usable_keyring()
    if keyring is None or get_passphrase(target) is None:
        return False
    try:
        keyring.delete_password(SERVICE, entry_name(target))
    except Exception:
        return False
    return True
