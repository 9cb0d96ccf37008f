"""Disposable local test hosts that look like a provider's fresh VPS: Debian image, qemu VM, SSH."""
