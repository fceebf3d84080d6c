/// Everything that can be wrong with a checkpoint on disk. Each case names the file and,
/// where there is one, the tensor at fault, and says what was expected.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case missingFile(path: String)
    case unreadableFile(path: String, reason: String)
    case truncatedFile(path: String, expectedBytes: Int, actualBytes: Int)
    case headerLengthBeyondFile(path: String, headerLength: UInt64, fileSize: Int)
    case badHeader(path: String, reason: String)
    case offsetsOutOfRange(path: String, tensor: String, begin: Int, end: Int, dataBytes: Int)
    case unknownDType(path: String, tensor: String, dtype: String)
    case byteCountMismatch(path: String, tensor: String, shape: [Int], dtype: String, expectedBytes: Int, actualBytes: Int)
    case shapeMismatch(path: String, tensor: String, expected: [Int], actual: [Int])
    case unsupportedDType(path: String, tensor: String, dtype: String, supported: String)
    case missingTensor(tensor: String, searched: [String])
    case badIndex(path: String, reason: String)
    case badConfig(path: String, field: String, reason: String)
    case unsupportedArchitecture(path: String, architecture: String, supported: [String])
    case badQuantization(path: String, tensor: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let path):
            "missing file: \(path)"
        case .unreadableFile(let path, let reason):
            "cannot read \(path): \(reason)"
        case .truncatedFile(let path, let expected, let actual):
            "\(path): file is truncated: its header describes \(expected) bytes but the file has \(actual)"
        case .headerLengthBeyondFile(let path, let length, let size):
            "\(path): header length \(length) runs beyond the end of the file (\(size) bytes); not a safetensors file or truncated"
        case .badHeader(let path, let reason):
            "\(path): bad safetensors header: \(reason)"
        case .offsetsOutOfRange(let path, let tensor, let begin, let end, let dataBytes):
            "\(path): tensor '\(tensor)' has data offsets [\(begin), \(end)) outside the data section (\(dataBytes) bytes) or overlapping another tensor"
        case .unknownDType(let path, let tensor, let dtype):
            "\(path): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case .byteCountMismatch(let path, let tensor, let shape, let dtype, let expected, let actual):
            "\(path): tensor '\(tensor)' of shape \(shape) and dtype \(dtype) needs \(expected) bytes but its offsets span \(actual)"
        case .shapeMismatch(let path, let tensor, let expected, let actual):
            "\(path): tensor '\(tensor)' has shape \(actual), but config.json implies \(expected)"
        case .unsupportedDType(let path, let tensor, let dtype, let supported):
            "\(path): tensor '\(tensor)' has dtype \(dtype); supported here: \(supported)"
        case .missingTensor(let tensor, let searched):
            "missing tensor '\(tensor)' (searched \(searched.joined(separator: ", ")))"
        case .badIndex(let path, let reason):
            "\(path): bad safetensors index: \(reason)"
        case .badConfig(let path, let field, let reason):
            "\(path): field '\(field)': \(reason)"
        case .unsupportedArchitecture(let path, let architecture, let supported):
            "\(path): architecture '\(architecture)' is not supported (supported: \(supported.joined(separator: ", ")))"
        case .badQuantization(let path, let tensor, let reason):
            "\(path): tensor '\(tensor)': \(reason)"
        }
    }
}
