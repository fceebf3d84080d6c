import Foundation
import NIOCore

/// How a coordinator reaches its workers (`--transport`).
public enum TransportChoice: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Shared memory for a worker on this host (same kernel, an address local to this
    /// network namespace, and the worker accepts it); RDMA for a worker elsewhere when both
    /// ends have an active RDMA device; TCP otherwise or if either fails.
    case auto
    case tcp
    /// Shared memory, or the connection fails (for tests and benchmarks that must not fall back).
    case shm
    /// RDMA (libibverbs): a reliable-connected queue pair per worker; the process refuses to
    /// start without an active RDMA device, and a worker that cannot connect fails.
    case rdma

    public var description: String { rawValue }
}

/// Whether an address names this network namespace's own interfaces (loopback or an
/// address of a local device): with the same boot id, a worker there shares this host's
/// memory. An address of another namespace's veth is remote, as a real host's would be.
public enum LocalAddresses {
    public static func contains(_ host: String) -> Bool {
        if host == "localhost" || host.hasPrefix("127.") || host == "::1" { return true }
        guard let devices = try? System.enumerateDevices() else { return false }
        return devices.contains { device in device.address?.ipAddress == host }
    }
}
