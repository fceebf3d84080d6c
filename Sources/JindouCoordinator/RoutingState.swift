import JindouModel
import JindouPlacement
import Synchronization

/// What the dispatch path routes with: an immutable snapshot of the active placement and
/// which workers are live. One snapshot is used for a whole step (every layer), so a
/// placement switch lands between steps.
public struct RoutingTable: Sendable {
    public let placement: Placement
    /// Names of workers that may receive dispatches.
    public let live: Set<String>

    public init(placement: Placement, live: Set<String>) {
        self.placement = placement
        self.live = live
    }

    /// Live hosts (worker names) of `key`, primary first.
    public func liveHosts(_ key: ExpertKey, excluding failed: Set<String> = []) -> [String] {
        placement.hostsOf(key).map { placement.workers[$0] }.filter { live.contains($0) && !failed.contains($0) }
    }
}

/// The current routing table, swapped atomically by the controller, and how many steps
/// are still running on each placement version (old shards are released only once none are).
public final class RoutingState: Sendable {
    private struct Guarded {
        var table: RoutingTable
        var inFlight: [UInt64: Int] = [:]
    }
    private let guarded: Mutex<Guarded>

    public init(_ table: RoutingTable) {
        guarded = Mutex(Guarded(table: table))
    }

    public var table: RoutingTable { guarded.withLock { $0.table } }

    public func update(_ change: (inout RoutingTable) -> Void) {
        guarded.withLock { change(&$0.table) }
    }

    public func replace(_ table: RoutingTable) {
        guarded.withLock { $0.table = table }
    }

    /// Takes the table a step will use and counts the step as running on its version.
    public func beginStep() -> RoutingTable {
        guarded.withLock {
            $0.inFlight[$0.table.placement.version, default: 0] += 1
            return $0.table
        }
    }

    public func endStep(_ version: UInt64) {
        guarded.withLock {
            $0.inFlight[version, default: 1] -= 1
            if $0.inFlight[version] == 0 { $0.inFlight[version] = nil }
        }
    }

    /// Steps still running on placement `version`.
    public func stepsInFlight(version: UInt64) -> Int { guarded.withLock { $0.inFlight[version] ?? 0 } }

    /// Marks a worker not live (a dispatch to it failed); the controller restores it when
    /// the worker answers again.
    public func markDown(_ name: String) {
        guarded.withLock {
            var live = $0.table.live
            live.remove(name)
            $0.table = RoutingTable(placement: $0.table.placement, live: live)
        }
    }
}
