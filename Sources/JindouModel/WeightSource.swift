import Foundation

/// Where a model's weights come from: a Hugging Face checkpoint directory (`Checkpoint`)
/// or a llama.cpp GGUF file (`GGUFCheckpoint`).
///
/// Tensors are always requested by their Hugging Face names (`WeightNames`,
/// `ModelDescription.nonExpertTensors()` / `expertTensors(_:)`), so the model-building code
/// (`DecoderModel`, `ExpertShard`) is the same for both; a source maps exactly the bytes of
/// what is requested, in the format they are stored in.
public protocol WeightSource: Sendable {
    /// The directory or file, for messages.
    var path: String { get }
    /// The model the source holds (config.json, or GGUF metadata).
    func modelDescription() throws -> ModelDescription
    /// Maps exactly the requested tensors, validating format and shape.
    func load(_ requests: [TensorRequest]) throws -> TensorSet
    /// Bytes the requested tensors occupy in the source; nothing is mapped.
    func byteCount(of requests: [TensorRequest]) throws -> Int
    /// Identity of the model, which coordinator and workers compare (`ModelFingerprint`).
    func fingerprint() throws -> String
}

/// Opens `path` as a weight source: a directory is a Hugging Face checkpoint, a file a GGUF
/// file (`--model DIR` or `--model FILE.gguf`).
public func openWeightSource(_ path: String) throws -> any WeightSource {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw CheckpointError.missingFile(path: path)
    }
    return isDirectory.boolValue ? try Checkpoint(directory: path) : try GGUFCheckpoint(path: path)
}

extension Checkpoint: WeightSource {
    public var path: String { directory }

    public func modelDescription() throws -> ModelDescription { try ModelDescription(checkpoint: self) }

    public func fingerprint() throws -> String { try ModelFingerprint.compute(self) }

    public func byteCount(of requests: [TensorRequest]) throws -> Int {
        let headers = try headers(for: requests.map(\.name))
        var total = 0
        for request in requests {
            guard let file = weightMap[request.name], let entry = headers[file]?.entries[request.name] else {
                if request.optional { continue }
                throw CheckpointError.missingTensor(tensor: request.name, searched: [directory])
            }
            total += request.rows.map { entry.dataRange.count / max(1, entry.shape.first ?? 1) * $0.count } ?? entry.dataRange.count
        }
        return total
    }
}
