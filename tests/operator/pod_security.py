"""The Pod Security Standards "restricted" profile (Kubernetes v1.30), as a test helper.

Each check follows one control of https://kubernetes.io/docs/concepts/security/pod-security-standards/
(baseline controls included, since restricted is baseline plus more). `violations(pod_spec)`
returns one line per broken control; an empty list is what the admission controller in
`enforce: restricted` mode would accept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
_RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def pod_specs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs a manifest creates (a Pod, or the template of a workload)."""
    kind = document.get("kind")
    if kind == "Pod":
        return [document["spec"]]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [document["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [document["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def violations(spec: dict[str, Any]) -> list[str]:
    found: list[str] = []
    pod = spec.get("securityContext") or {}
    # --- baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"{key} must be false")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            found.append(f"volume {volume['name']}: hostPath is forbidden")
        elif not kinds <= _RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: type {sorted(kinds)} is not allowed")
    for sysctl in pod.get("sysctls") or []:
        if sysctl["name"] not in _SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']} is not safe")
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    pod_non_root = pod.get("runAsNonRoot")
    if pod.get("runAsUser") == 0:
        found.append("pod runAsUser must not be 0")
    found += _selinux("pod", pod)
    if (pod.get("appArmorProfile") or {}).get("type") == "Unconfined":
        found.append("pod appArmorProfile must not be Unconfined")
    for container in _containers(spec):
        name = f"container {container['name']}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount must be Default")
        if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{name}: appArmorProfile must not be Unconfined")
        found += _selinux(name, context)
        capabilities = context.get("capabilities") or {}
        added = set(capabilities.get("add") or [])
        if not added <= _BASELINE_CAPABILITIES:
            found.append(f"{name}: adds capabilities {sorted(added - _BASELINE_CAPABILITIES)}")
        # --- restricted
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        non_root = context.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            found.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if context.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser must not be 0")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, not {seccomp}")
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities must drop ALL")
        if not added <= {"NET_BIND_SERVICE"}:
            found.append(f"{name}: may add only NET_BIND_SERVICE")
    return found


def _selinux(where: str, context: dict[str, Any]) -> list[str]:
    options = context.get("seLinuxOptions") or {}
    problems = []
    if options.get("type", "") not in _SELINUX_TYPES:
        problems.append(f"{where}: seLinuxOptions.type {options['type']} is not allowed")
    if options.get("user") or options.get("role"):
        problems.append(f"{where}: seLinuxOptions user/role must be unset")
    return problems
