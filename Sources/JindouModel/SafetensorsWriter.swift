import Foundation
import JindouNumerics

/// Writes `.safetensors` files: the header (8-byte length + JSON padded with spaces to
/// an 8-byte boundary, as the reference writer does) then each tensor's bytes in order.
public struct SafetensorsWriter {
    public struct Tensor {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: Data

        public init(name: String, dtype: DType, shape: [Int], bytes: Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// An F32 tensor from floats.
        public init(name: String, shape: [Int], floats: [Float]) {
            self.init(name: name, dtype: .float32, shape: shape, bytes: floats.withUnsafeBytes { Data($0) })
        }
    }

    public var tensors: [Tensor] = []
    public var metadata: [String: String] = ["format": "pt"]

    public init() {}

    public mutating func append(_ tensor: Tensor) { tensors.append(tensor) }

    /// The complete file contents.
    public func encoded() throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]]
            offset += t.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var data = Data()
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(json)
        for t in tensors { data.append(t.bytes) }
        return data
    }

    public func write(to path: String) throws {
        try encoded().write(to: URL(fileURLWithPath: path))
    }
}
