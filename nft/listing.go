package nft

import (
	"regexp"
	"sort"
	"strings"
)

var (
	listingBlockStart = regexp.MustCompile(`^\t(set|map|chain) \S+ \{$`)
	listingElements   = regexp.MustCompile(`(?s)elements = \{(.*?)\}\n`)
	listingSpaces     = regexp.MustCompile(`\s+`)
)

// CanonicalListing removes from the text of `nft list table` (or Dump) only
// what is order or wrapping noise: the order of sets, maps and chains, and
// how (and in which order) elements are wrapped onto lines. Every token of
// content stays, so two canonical listings are equal exactly when the
// tables are. It lets a test compare the kernel's own listing with Dump.
func CanonicalListing(text string) string {
	text = listingElements.ReplaceAllStringFunc(text, func(m string) string {
		body := listingElements.FindStringSubmatch(m)[1]
		elems := strings.Split(strings.TrimSpace(listingSpaces.ReplaceAllString(body, " ")), ", ")
		sort.Strings(elems)
		return "elements = {\n" + strings.Join(elems, ",\n") + " }\n"
	})
	var blocks []string
	var cur []string
	var head, tail []string
	for _, line := range strings.Split(text, "\n") {
		switch {
		case listingBlockStart.MatchString(line):
			cur = []string{line}
		case cur != nil && line == "\t}":
			blocks = append(blocks, strings.Join(append(cur, line), "\n"))
			cur = nil
		case cur != nil:
			cur = append(cur, line)
		case line == "" && len(blocks) > 0:
			// blank separators between blocks
		case len(blocks) == 0:
			head = append(head, line)
		default:
			tail = append(tail, line)
		}
	}
	sort.Strings(blocks)
	return strings.Join(head, "\n") + "\n" + strings.Join(blocks, "\n") + "\n" + strings.Join(tail, "\n")
}
