package influx

import "unicode/utf8"

// isMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*, the
// Prometheus metric name charset.
func isMetricName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i], i == 0, true) {
			return false
		}
	}
	return s != ""
}

// isLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*.
func isLabelName(s []byte) bool {
	for i, c := range s {
		if !nameByte(c, i == 0, false) {
			return false
		}
	}
	return len(s) > 0
}

func nameByte(c byte, first, metric bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		metric && c == ':' || !first && c >= '0' && c <= '9'
}

// appendSanitized appends s with every character outside the Prometheus
// charset replaced by '_' (one per character, not per byte) and a '_' put
// before a leading digit: "disk.io-time" becomes "disk_io_time", "1m"
// becomes "_1m".
func appendSanitized(dst, s []byte, metric bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case nameByte(c, i == 0, metric):
				dst = append(dst, c)
			case i == 0 && c >= '0' && c <= '9':
				dst = append(dst, '_', c)
			default:
				dst = append(dst, '_')
			}
			i++
			continue
		}
		_, n := utf8.DecodeRune(s[i:])
		dst = append(dst, '_')
		i += n
	}
	return dst
}

// SanitizeMetricName returns name as weir stores it when names are
// sanitized (the default); tests and tools use it to predict series names.
func SanitizeMetricName(name string) string {
	if isMetricName(name) {
		return name
	}
	return string(appendSanitized(nil, []byte(name), true))
}

// SanitizeLabelName is SanitizeMetricName for tag and field keys.
func SanitizeLabelName(name string) string {
	if isLabelName([]byte(name)) {
		return name
	}
	return string(appendSanitized(nil, []byte(name), false))
}
