import Foundation
import JindouModel
import JindouPlacement

/// One record of the cluster's persistent state.
public enum ClusterRecord: Codable, Sendable, Equatable {
    case member(MemberRecord)
    case memberRemoved(name: String)
    case placement(PlacementRecord)
    case settings(replicas: Int, pinned: Bool)
    /// The serving-time balancing bias, layer (string key) → per-expert bias (`--balance-bias`).
    case servingBias([String: [Float]])

    enum CodingKeys: String, CodingKey { case type, member, name, placement, replicas, pinned, bias }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .type) {
        case "member": self = .member(try c.decode(MemberRecord.self, forKey: .member))
        case "member_removed": self = .memberRemoved(name: try c.decode(String.self, forKey: .name))
        case "placement": self = .placement(try c.decode(PlacementRecord.self, forKey: .placement))
        case "settings": self = .settings(replicas: try c.decode(Int.self, forKey: .replicas), pinned: try c.decode(Bool.self, forKey: .pinned))
        case "serving_bias": self = .servingBias(try c.decode([String: [Float]].self, forKey: .bias))
        case let other: throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown record type \(other)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .member(let m):
            try c.encode("member", forKey: .type)
            try c.encode(m, forKey: .member)
        case .memberRemoved(let name):
            try c.encode("member_removed", forKey: .type)
            try c.encode(name, forKey: .name)
        case .placement(let p):
            try c.encode("placement", forKey: .type)
            try c.encode(p, forKey: .placement)
        case .settings(let replicas, let pinned):
            try c.encode("settings", forKey: .type)
            try c.encode(replicas, forKey: .replicas)
            try c.encode(pinned, forKey: .pinned)
        case .servingBias(let bias):
            try c.encode("serving_bias", forKey: .type)
            try c.encode(bias, forKey: .bias)
        }
    }
}

public struct MemberRecord: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var cores: Int
    public var memoryBytes: UInt64
    public var origin: String
    public var draining: Bool

    enum CodingKeys: String, CodingKey {
        case name, address, cores, origin, draining
        case memoryBytes = "memory_bytes"
    }
}

/// A placement in the log: per worker, per layer, expert ranges.
public struct PlacementRecord: Codable, Sendable, Equatable {
    public var version: UInt64
    public var workers: [String]
    public var shards: [String: [String: String]]

    public init(_ placement: Placement) {
        version = placement.version
        workers = placement.workers
        shards = Dictionary(uniqueKeysWithValues: placement.workers.indices.map { index in
            (placement.workers[index], Dictionary(uniqueKeysWithValues:
                ExpertSetCoding.layers(placement.experts(ofWorker: index)).map { (String($0.key), $0.value) }))
        })
    }

    public func placement(expertCount: Int) throws -> Placement {
        var hosts: [ExpertKey: [Int]] = [:]
        for (index, name) in workers.enumerated() {
            let layers = Dictionary(uniqueKeysWithValues: (shards[name] ?? [:]).compactMap { key, value in Int(key).map { ($0, value) } })
            for key in try ExpertSetCoding.keys(layers, expertCount: expertCount) { hosts[key, default: []].append(index) }
        }
        return try Placement(version: version, workers: workers, hosts: hosts)
    }
}

/// The coordinator's state under `--state-dir`: an append-only log of JSON lines
/// (`cluster.log`), each written and fsynced before the change takes effect. A crash
/// mid-write leaves at most a torn last line, which replay ignores. When the log grows it
/// is compacted: the current state is written to a new file, fsynced, and renamed over it.
public final class ClusterStateLog: @unchecked Sendable {
    // @unchecked: used only from the ClusterController actor.
    public let directory: String
    private let path: String
    private var handle: FileHandle
    private var records = 0

    /// Opens (creating) the log and returns it with the records replayed from it.
    public static func open(directory: String) throws -> (ClusterStateLog, [ClusterRecord]) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent("cluster.log")
        var records: [ClusterRecord] = []
        if let data = FileManager.default.contents(atPath: path) {
            for line in data.split(separator: UInt8(ascii: "\n")) {
                guard let record = try? JSONDecoder().decode(ClusterRecord.self, from: Data(line)) else { continue }
                records.append(record)
            }
        } else {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ClusterError.rejected("cannot create the cluster state log \(path)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ClusterError.rejected("cannot write the cluster state log \(path)")
        }
        try handle.seekToEnd()
        let log = ClusterStateLog(directory: directory, path: path, handle: handle)
        log.records = records.count
        return (log, records)
    }

    private init(directory: String, path: String, handle: FileHandle) {
        self.directory = directory
        self.path = path
        self.handle = handle
    }

    /// Appends records durably.
    public func append(_ new: [ClusterRecord]) throws {
        var data = Data()
        for record in new {
            data.append(try JSONEncoder().encode(record))
            data.append(UInt8(ascii: "\n"))
        }
        try handle.write(contentsOf: data)
        try handle.synchronize()
        records += new.count
    }

    public var needsCompaction: Bool { records > 2000 }

    /// Replaces the log with `state` (the records that rebuild the current state).
    public func compact(to state: [ClusterRecord]) throws {
        let temporary = path + ".new"
        var data = Data()
        for record in state {
            data.append(try JSONEncoder().encode(record))
            data.append(UInt8(ascii: "\n"))
        }
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw ClusterError.rejected("cannot write \(temporary) while compacting the cluster state log")
        }
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
        try file.synchronize()
        try file.close()
        try handle.close()
        guard rename(temporary, path) == 0 else { throw ClusterError.rejected("cannot replace \(path)") }
        let directoryDescriptor = Foundation.open(directory, O_RDONLY)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
        handle = FileHandle(forWritingAtPath: path)!
        try handle.seekToEnd()
        records = state.count
    }
}
