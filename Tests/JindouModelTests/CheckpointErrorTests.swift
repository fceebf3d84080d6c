import Foundation
import Testing
import JindouModel
import JindouTestSupport

/// A copy of a fixture checkpoint in a fresh temporary directory, to damage.
struct ScratchCheckpoint {
    let directory: String

    init(copying fixture: String) throws {
        directory = Scratch.directory + "jindou-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: Fixtures.path(fixture), toPath: directory)
    }

    func path(_ file: String) -> String { directory + "/" + file }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// Rewrites a safetensors file's header JSON with `edit`, keeping its data section.
    func editHeader(_ file: String, _ edit: (inout [String: Any]) -> Void) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(file)))
        let length = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as! [String: Any]
        edit(&header)
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = Data()
        var newLength = UInt64(json.count)
        withUnsafeBytes(of: &newLength) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(data.subdata(in: (8 + length)..<data.count))
        try out.write(to: URL(fileURLWithPath: path(file)))
    }

    /// Overwrites bytes at `offset`.
    func overwrite(_ file: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path(file)))
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data(bytes))
        try handle.close()
    }

    func load() throws -> InferenceEngine { try InferenceEngine.load(directory: directory) }
}

/// Every loader error names the file (and tensor) at fault; the tests damage real files.
@Suite("Checkpoint errors name the file and tensor at fault")
struct CheckpointErrorTests {
    let fixture = "qwen3-moe-tiny"
    let file = "model.safetensors"
    /// A non-square weight, so transposing its shape keeps the byte count but not the shape.
    let tensor = "model.layers.0.self_attn.k_proj.weight"

    func expectError(_ scratch: ScratchCheckpoint, _ check: (CheckpointError) -> Bool) {
        do {
            _ = try scratch.load()
            Issue.record("loading a damaged checkpoint succeeded")
        } catch let error as CheckpointError {
            #expect(check(error), "unexpected error: \(error)")
            #expect(error.description.contains(scratch.directory) || error.description.contains("model."),
                    "error does not name the file: \(error)")
        } catch {
            Issue.record("expected a CheckpointError, got \(error)")
        }
    }

    @Test func missingDirectoryAndConfig() throws {
        #expect(throws: CheckpointError.missingFile(path: "/nonexistent/model")) {
            try InferenceEngine.load(directory: "/nonexistent/model")
        }
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try FileManager.default.removeItem(atPath: scratch.path("config.json"))
        expectError(scratch) { $0 == .missingFile(path: scratch.path("config.json")) }
    }

    @Test func missingShardFile() throws {
        let scratch = try ScratchCheckpoint(copying: "qwen3-moe-tiny-sharded")
        defer { scratch.remove() }
        let shard = try FileManager.default.contentsOfDirectory(atPath: scratch.directory)
            .filter { $0.hasPrefix("model-") && $0.hasSuffix(".safetensors") }.sorted().last!
        try FileManager.default.removeItem(atPath: scratch.path(shard))
        expectError(scratch) { $0 == .missingFile(path: scratch.path(shard)) }
    }

    @Test func truncatedFile() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        let size = try FileManager.default.attributesOfItem(atPath: scratch.path(file))[.size] as! Int
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch.path(file)))
        try handle.truncate(atOffset: UInt64(size - 1000))
        try handle.close()
        expectError(scratch) {
            if case .truncatedFile(let path, let expected, let actual) = $0 {
                return path == scratch.path(file) && expected == size && actual == size - 1000
            }
            return false
        }
    }

    @Test func headerLengthBeyondFile() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.overwrite(file, at: 0, with: [0, 0, 0, 0, 0, 0, 0, 0x40])
        expectError(scratch) {
            if case .headerLengthBeyondFile(let path, _, _) = $0 { return path == scratch.path(file) }
            return false
        }
    }

    @Test func badJSONHeader() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.overwrite(file, at: 8, with: Array("[[[".utf8))
        expectError(scratch) {
            if case .badHeader(let path, _) = $0 { return path == scratch.path(file) }
            return false
        }
    }

    @Test func overlappingOffsets() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.editHeader(file) { header in
            var entry = header[tensor] as! [String: Any]
            let offsets = entry["data_offsets"] as! [Int]
            // Shift the tensor onto its neighbour's bytes (same length, overlapping range).
            let shift = offsets[0] >= 8 ? -8 : 8
            entry["data_offsets"] = [offsets[0] + shift, offsets[1] + shift]
            header[tensor] = entry
        }
        expectError(scratch) {
            if case .offsetsOutOfRange(let path, _, _, _, _) = $0 { return path == scratch.path(file) }
            return false
        }
    }

    @Test func unknownDType() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.editHeader(file) { header in
            var entry = header[tensor] as! [String: Any]
            entry["dtype"] = "F12"
            header[tensor] = entry
        }
        expectError(scratch) { $0 == .unknownDType(path: scratch.path(file), tensor: tensor, dtype: "F12") }
    }

    @Test func byteCountDisagreesWithShape() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.editHeader(file) { header in
            var entry = header[tensor] as! [String: Any]
            let shape = entry["shape"] as! [Int]
            entry["shape"] = [shape[0] + 1, shape[1]]
            header[tensor] = entry
        }
        expectError(scratch) {
            if case .byteCountMismatch(let path, let name, _, _, _, _) = $0 { return path == scratch.path(file) && name == tensor }
            return false
        }
    }

    @Test func shapeMismatchWithConfig() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        var original: [Int] = []
        try scratch.editHeader(file) { header in
            var entry = header[tensor] as! [String: Any]
            original = entry["shape"] as! [Int]
            entry["shape"] = [original[1], original[0]]  // same bytes, transposed shape
            header[tensor] = entry
        }
        #expect(original[0] != original[1], "fixture's q_proj must be non-square for this test")
        expectError(scratch) {
            $0 == .shapeMismatch(path: scratch.path(file), tensor: tensor, expected: original, actual: [original[1], original[0]])
        }
    }

    @Test func missingTensor() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.editHeader(file) { $0.removeValue(forKey: tensor) }
        expectError(scratch) {
            if case .missingTensor(let name, let searched) = $0 { return name == tensor && searched == [scratch.path(file)] }
            return false
        }
    }

    @Test func unsupportedWeightDType() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        try scratch.editHeader(file) { header in
            var entry = header[tensor] as! [String: Any]
            entry["dtype"] = "I32"  // same width as F32
            header[tensor] = entry
        }
        expectError(scratch) {
            if case .unsupportedDType(let path, let name, "I32", _) = $0 { return path == scratch.path(file) && name == tensor }
            return false
        }
    }

    @Test func badConfigFieldIsNamed() throws {
        let scratch = try ScratchCheckpoint(copying: fixture)
        defer { scratch.remove() }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path("config.json")))) as! [String: Any]
        config["hidden_size"] = "wide"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: scratch.path("config.json")))
        expectError(scratch) {
            if case .badConfig(_, "hidden_size", _) = $0 { return true }
            return false
        }
        config["hidden_size"] = 64
        config["architectures"] = ["LlamaForCausalLM"]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: scratch.path("config.json")))
        expectError(scratch) {
            if case .unsupportedArchitecture(_, "LlamaForCausalLM", _) = $0 { return true }
            return false
        }
    }

    @Test func corruptIndex() throws {
        let scratch = try ScratchCheckpoint(copying: "qwen3-moe-tiny-sharded")
        defer { scratch.remove() }
        try Data("{\"metadata\": {}}".utf8).write(to: URL(fileURLWithPath: scratch.path("model.safetensors.index.json")))
        expectError(scratch) {
            if case .badIndex(let path, _) = $0 { return path == scratch.path("model.safetensors.index.json") }
            return false
        }
    }
}
