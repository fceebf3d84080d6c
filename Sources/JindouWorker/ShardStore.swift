import Foundation
import JindouModel
import JindouNumerics
import Synchronization

/// The experts a worker holds right now, replaceable while it serves.
///
/// Readers (dispatches) take the current immutable `ExpertShard` snapshot, so loading
/// new experts or releasing old ones never blocks or disturbs a computation in flight;
/// a released expert's memory is unmapped when the last snapshot using it is gone.
public final class ShardStore: Sendable {
    public let description: ModelDescription
    let checkpoint: any WeightSource
    private let current: Mutex<ExpertShard>
    private let version = Atomic<UInt64>(0)
    /// Loads and releases run one at a time.
    private let updates = Mutex<Void>(())

    /// The format experts are re-encoded in after loading (nil: the checkpoint's).
    public let expertFormat: BlockFormat?

    public init(description: ModelDescription, checkpoint: any WeightSource, initial: [ExpertKey], prefault: Bool,
                expertFormat: BlockFormat? = nil) throws {
        self.description = description
        self.checkpoint = checkpoint
        self.expertFormat = expertFormat
        var shard = try ExpertShard(description: description, checkpoint: checkpoint, keys: initial)
        if prefault && expertFormat == nil { shard.tensors.prefault(label: "loading experts") }
        if let expertFormat { shard = try shard.quantized(expertFormat) }
        current = Mutex(shard)
    }

    /// The experts held now.
    public var shard: ExpertShard { current.withLock { $0 } }

    /// Version of the last applied SHARD_UPDATE (0: the worker's own initial shard).
    public var shardVersion: UInt64 { version.load(ordering: .acquiring) }

    /// Makes the held set exactly `keys`: loads (and prefaults) the missing experts, keeps
    /// the ones already held, drops the rest. Returns the new shard.
    @discardableResult
    public func apply(_ keys: [ExpertKey], version newVersion: UInt64, prefault: Bool = true) throws -> ExpertShard {
        try updates.withLock { _ in
            let old = shard
            let wanted = Set(keys)
            let missing = wanted.filter { old.experts[$0] == nil }.sorted()
            var loaded = try ExpertShard(description: description, checkpoint: checkpoint, keys: missing)
            if prefault && expertFormat == nil { loaded.tensors.prefault(label: "loading \(missing.count) experts") }
            if let expertFormat { loaded = try loaded.quantized(expertFormat) }
            var experts = old.experts.filter { wanted.contains($0.key) }
            for (key, weights) in loaded.experts { experts[key] = weights }
            let next = ExpertShard(description: description, experts: experts)
            current.withLock { $0 = next }
            version.store(newVersion, ordering: .releasing)
            return next
        }
    }
}
