import JindouModel
import JindouWire

/// "0-3,7,9-10" from sorted-or-not expert indices.
public func formatExpertRanges(_ experts: [Int]) -> String {
    let sorted = Array(Set(experts)).sorted()
    var parts: [String] = []
    var index = 0
    while index < sorted.count {
        var end = index
        while end + 1 < sorted.count && sorted[end + 1] == sorted[end] + 1 { end += 1 }
        parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
        index = end + 1
    }
    return parts.joined(separator: ",")
}

/// A set of (layer, expert) pairs in the compact per-layer form the wire and the admin
/// API use: `{layer: "0-31,40"}`.
public enum ExpertSetCoding {
    public static func layers(_ keys: some Sequence<ExpertKey>) -> [Int: String] {
        var byLayer: [Int: [Int]] = [:]
        for key in keys { byLayer[key.layer, default: []].append(key.expert) }
        return byLayer.mapValues(formatExpertRanges)
    }

    public static func keys(_ layers: [Int: String], expertCount: Int) throws -> [ExpertKey] {
        try layers.flatMap { layer, ranges in
            try parseExpertRanges(ranges, limit: expertCount).map { ExpertKey(layer: layer, expert: $0) }
        }.sorted()
    }

    /// As a protobuf `ShardSpec`.
    public static func spec(_ keys: some Sequence<ExpertKey>, version: UInt64, expertBytes: UInt64 = 0) -> Jindou_V1_ShardSpec {
        var spec = Jindou_V1_ShardSpec()
        spec.version = version
        spec.expertBytes = expertBytes
        spec.layers = layers(keys).sorted { $0.key < $1.key }.map {
            var entry = Jindou_V1_LayerExperts()
            entry.layer = UInt32($0.key)
            entry.experts = $0.value
            return entry
        }
        return spec
    }

    public static func keys(_ spec: Jindou_V1_ShardSpec, expertCount: Int) throws -> [ExpertKey] {
        try keys(Dictionary(spec.layers.map { (Int($0.layer), $0.experts) }, uniquingKeysWith: { $0 + "," + $1 }),
                 expertCount: expertCount)
    }
}
