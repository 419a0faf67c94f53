#include "yolact/coco_output.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace yolact {
namespace {

// Run lengths of the mask read column by column (COCO's order), starting with a run of zeros.
std::vector<std::int64_t> column_major_runs(const cv::Mat& mask) {
    cv::Mat columns;  // row i holds column i of the mask, so the column-major walk reads contiguous memory
    cv::transpose(mask, columns);
    std::vector<std::int64_t> runs;
    bool current = false;
    std::int64_t length = 0;
    for (int r = 0; r < columns.rows; ++r) {
        const std::uint8_t* row = columns.ptr<std::uint8_t>(r);
        for (int c = 0; c < columns.cols; ++c) {
            const bool value = row[c] != 0;
            if (value != current) {
                runs.push_back(length);
                length = 0;
                current = value;
            }
            ++length;
        }
    }
    runs.push_back(length);
    return runs;
}

// COCO's compressed counts: from the third run on, each run is stored as its difference to the run two
// before it; every number is written in 5-bit groups, least significant first, as characters from '0'
// (48) on, with 0x20 marking "another group follows" and 0x10 of the last group carrying the sign.
std::string compress_runs(const std::vector<std::int64_t>& runs) {
    std::string text;
    for (std::size_t i = 0; i < runs.size(); ++i) {
        std::int64_t value = i > 2 ? runs[i] - runs[i - 2] : runs[i];
        bool more = true;
        while (more) {
            const int group = static_cast<int>(((value % 32) + 32) % 32);  // low 5 bits, also for negatives
            value = (value - group) / 32;                                   // floor division by 32
            more = (group & 0x10) ? value != -1 : value != 0;
            text.push_back(static_cast<char>((more ? group | 0x20 : group) + 48));
        }
    }
    return text;
}

void append_unicode_escape(std::string& out, unsigned code_unit) {
    static const char* const hex = "0123456789abcdef";
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) {
        out.push_back(hex[(code_unit >> shift) & 0xf]);
    }
}

// Length of the UTF-8 sequence starting at text[i] and its code point; 0 if the bytes are not valid UTF-8.
std::size_t decode_utf8(const std::string& text, std::size_t i, unsigned& code_point) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned lead = byte(i);
    const std::size_t length = lead >= 0xf0 && lead < 0xf5 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc2 ? 2 : 0;
    if (length == 0 || lead >= 0xf5 || i + length > text.size()) {
        return 0;
    }
    code_point = lead & (0x7f >> length);
    for (std::size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xc0) != 0x80) {
            return 0;
        }
        code_point = (code_point << 6) | (byte(i + k) & 0x3f);
    }
    const unsigned shortest[] = {0, 0, 0x80, 0x800, 0x10000};
    const bool surrogate = code_point >= 0xd800 && code_point < 0xe000;
    return code_point < shortest[length] || code_point > 0x10ffff || surrogate ? 0 : length;
}

// A JSON string literal as Python's json.dumps writes it (ensure_ascii): everything outside printable ASCII
// escaped, characters beyond the BMP as surrogate pairs, bytes that are not UTF-8 as the lone surrogates
// U+DC80..U+DCFF that Python's file-system decoding gives them.
std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (std::size_t i = 0; i < text.size();) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        const char* named = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : nullptr;
        if (named) {
            out += named;
            ++i;
        } else if (c >= 0x20 && c < 0x7f) {
            out.push_back(static_cast<char>(c));
            ++i;
        } else if (c < 0x80) {
            append_unicode_escape(out, c);
            ++i;
        } else {
            unsigned code_point = 0;
            const std::size_t length = decode_utf8(text, i, code_point);
            if (length == 0) {
                append_unicode_escape(out, 0xdc00 + c);
                ++i;
                continue;
            }
            if (code_point >= 0x10000) {
                append_unicode_escape(out, 0xd800 + ((code_point - 0x10000) >> 10));
                append_unicode_escape(out, 0xdc00 + ((code_point - 0x10000) & 0x3ff));
            } else {
                append_unicode_escape(out, code_point);
            }
            i += length;
        }
    }
    return out + "\"";
}

// A float as Python's repr writes it: the shortest digits that round-trip, fixed notation for exponents in
// [-4, 16), otherwise d.ddde-XX; always with a decimal point or an exponent.
std::string python_float_repr(double value) {
    if (!std::isfinite(value)) {
        return std::isnan(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
    }
    if (value == 0.0) {
        return std::signbit(value) ? "-0.0" : "0.0";
    }
    char buffer[64];
    const auto written = std::to_chars(buffer, buffer + sizeof buffer, std::fabs(value), std::chars_format::scientific);
    const std::string scientific(buffer, written.ptr);  // d[.ddd]e[+-]XX
    const std::size_t e = scientific.find('e');
    const int exponent = std::stoi(scientific.substr(e + 1));
    std::string digits = scientific.substr(0, e);
    if (digits.size() > 1) {
        digits.erase(1, 1);  // the decimal point
    }
    std::string text = value < 0 ? "-" : "";
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            return text + "0." + std::string(-exponent - 1, '0') + digits;
        }
        const std::size_t integer_digits = static_cast<std::size_t>(exponent) + 1;
        if (digits.size() <= integer_digits) {
            return text + digits + std::string(integer_digits - digits.size(), '0') + ".0";
        }
        return text + digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
    }
    text += digits.substr(0, 1);
    if (digits.size() > 1) {
        text += "." + digits.substr(1);
    }
    const int magnitude = std::abs(exponent);
    return text + (exponent < 0 ? "e-" : "e+") + (magnitude < 10 ? "0" : "") + std::to_string(magnitude);
}

// Python's round(value, 6) (correctly rounded through the decimal text), as repr writes it.
std::string rounded_6(double value) {
    if (!std::isfinite(value)) {
        return python_float_repr(value);
    }
    char buffer[400];
    const auto written = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed, 6);
    double rounded = 0.0;
    std::from_chars(buffer, written.ptr, rounded);
    return python_float_repr(rounded);
}

// A JSON list of integers, one per line, as json.dumps(indent=1) lays it out at nesting `depth`.
std::string int_list(const std::vector<long long>& values, int depth) {
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
        out += (i ? ",\n" : "\n") + std::string(depth + 1, ' ') + std::to_string(values[i]);
    }
    return out + "\n" + std::string(depth, ' ') + "]";
}

std::string detection_json(const Detection& detection, int height, int width) {
    const Box& box = detection.box;
    const std::string pad(3, ' '), inner(4, ' ');
    return "  {\n" +
           pad + "\"class_id\": " + std::to_string(detection.class_id) + ",\n" +
           pad + "\"class_name\": " + json_string(detection.class_name) + ",\n" +
           pad + "\"score\": " + rounded_6(detection.score) + ",\n" +
           pad + "\"mask_score\": " + rounded_6(detection.mask_score) + ",\n" +
           pad + "\"box_xyxy\": " + int_list({box.x1, box.y1, box.x2, box.y2}, 3) + ",\n" +
           pad + "\"mask_area\": " + std::to_string(cv::countNonZero(detection.mask)) + ",\n" +
           pad + "\"mask_rle\": {\n" +
           inner + "\"size\": " + int_list({height, width}, 4) + ",\n" +
           inner + "\"counts\": " + json_string(rle_counts(detection.mask)) + "\n" +
           pad + "}\n" +
           "  }";
}

}  // namespace

std::string rle_counts(const cv::Mat& mask) {
    return compress_runs(column_major_runs(mask));
}

std::string detections_json(const ImageResult& result, const std::string& image) {
    std::string detections = "[]";
    if (!result.detections.empty()) {
        detections = "[\n";
        for (std::size_t i = 0; i < result.detections.size(); ++i) {
            detections += (i ? ",\n" : "") + detection_json(result.detections[i], result.height, result.width);
        }
        detections += "\n ]";
    }
    return "{\n \"image\": " + json_string(image) + ",\n \"height\": " + std::to_string(result.height) +
           ",\n \"width\": " + std::to_string(result.width) + ",\n \"detections\": " + detections + "\n}";
}

}  // namespace yolact
