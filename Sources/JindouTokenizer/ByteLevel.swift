/// GPT-2's byte-level alphabet: every byte maps to a printable unicode scalar, so any
/// UTF-8 text becomes a string BPE can merge without unknown symbols
/// (`bytes_to_unicode` in GPT-2 and `tokenizers`' ByteLevel).
enum ByteLevel {
    /// Scalar for each byte 0…255.
    static let encoder: [Unicode.Scalar] = {
        var printable = Array(UInt32(0x21)...0x7E) + Array(UInt32(0xA1)...0xAC) + Array(UInt32(0xAE)...0xFF)
        var scalars = printable
        var next: UInt32 = 0
        for byte in UInt32(0)...255 where !printable.contains(byte) {
            printable.append(byte)
            scalars.append(256 + next)
            next += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (byte, scalar) in zip(printable, scalars) { table[Int(byte)] = Unicode.Scalar(scalar)! }
        return table
    }()

    /// Byte for each scalar of the alphabet.
    static let decoder: [Unicode.Scalar: UInt8] = {
        var table: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in encoder.enumerated() { table[scalar] = UInt8(byte) }
        return table
    }()

    /// The byte-level string of some text.
    static func encode(_ text: Substring) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in text.utf8 { scalars.append(encoder[Int(byte)]) }
        return String(scalars)
    }

    /// Bytes of a token string: mapped through the alphabet when every scalar is in it,
    /// else the token's own UTF-8 (as `tokenizers`' ByteLevel decoder does for added tokens).
    static func bytes(of token: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = decoder[scalar] else { return Array(token.utf8) }
            bytes.append(byte)
        }
        return bytes
    }
}
