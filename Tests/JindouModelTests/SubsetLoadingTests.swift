import Foundation
import Testing
import JindouModel
import JindouTestSupport

/// Loading a subset maps only that subset: a worker that hosts a few experts maps their
/// bytes and nothing else.
@Suite("Subset loading maps only the requested tensors")
struct SubsetLoadingTests {
    /// Bytes of `path` currently mapped into this process, from /proc/self/maps.
    func mappedBytes(of path: String) throws -> Int {
        // procfs reports size 0, so read to the end rather than by size.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps"))
        defer { try? handle.close() }
        let maps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        var total = 0
        for line in maps.split(separator: "\n") where line.hasSuffix(path) {
            let range = line.split(separator: " ")[0].split(separator: "-")
            total += Int(range[1], radix: 16)! - Int(range[0], radix: 16)!
        }
        return total
    }

    @Test(arguments: ["qwen3-moe-tiny", "glm4-moe-tiny"])
    func expertShardMapsOnlyItsExperts(fixture: String) throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path(fixture))
        let description = try ModelDescription(checkpoint: checkpoint)
        let layer = description.sparseLayers.last!
        let keys = [ExpertKey(layer: layer, expert: 1), ExpertKey(layer: layer, expert: 2)]
        let shard = try ExpertShard(description: description, checkpoint: checkpoint, keys: keys)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))

        let expertBytes = keys.count * 3 * description.hiddenSize * description.moeIntermediateSize *
            shard.experts.values.first!.gate.dtype.byteSize
        #expect(shard.tensors.tensorBytes == expertBytes)
        #expect(Set(shard.tensors.tensors.keys) == Set(keys.flatMap { description.expertTensors($0).map(\.name) }))
        // Each mapping may round out to page boundaries, nothing more.
        #expect(shard.tensors.mappedBytes <= expertBytes + 2 * page * shard.tensors.regions.count)

        // The kernel agrees: the files' mapped bytes are the shard's, not the checkpoint's.
        let files = Set(shard.tensors.regions.map(\.path))
        let mapped = try files.reduce(0) { $0 + (try mappedBytes(of: $1)) }
        let fileBytes = try files.reduce(0) { $0 + (try FileManager.default.attributesOfItem(atPath: $1)[.size] as! Int) }
        #expect(mapped >= shard.tensors.mappedBytes)
        withExtendedLifetime(shard) {}
        #expect(shard.tensors.mappedBytes < fileBytes / 4, "mapped \(shard.tensors.mappedBytes) of \(fileBytes) bytes")
    }

    @Test func coordinatorSideLoadsNoExperts() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.path("glm4-moe-tiny"))
        let description = try ModelDescription(checkpoint: checkpoint)
        let model = try DecoderModel(description: description, checkpoint: checkpoint)
        #expect(!model.tensors.tensors.keys.contains { $0.contains(".mlp.experts.") })
        #expect(model.tensors.tensors.keys.contains { $0.contains(".mlp.shared_experts.") })
    }

    @Test func releasingTheShardUnmapsIt() throws {
        // A private copy: other tests map the shared fixture concurrently.
        let scratch = try ScratchCheckpoint(copying: "qwen3-moe-tiny")
        defer { scratch.remove() }
        let checkpoint = try Checkpoint(directory: scratch.directory)
        let description = try ModelDescription(checkpoint: checkpoint)
        let path = checkpoint.path(of: "model.safetensors")
        let before = try mappedBytes(of: path)
        do {
            let shard = try ExpertShard(description: description, checkpoint: checkpoint, keys: [ExpertKey(layer: 0, expert: 0)])
            #expect(try mappedBytes(of: path) > before)
            withExtendedLifetime(shard) {}
        }
        #expect(try mappedBytes(of: path) == before)
    }
}
