package rbac

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	// groupName is the API group of RBAC objects, roleRefs, and User and
	// Group subjects.
	groupName  = "rbac.authorization.k8s.io"
	apiVersion = groupName + "/v1"

	kindRole               = "Role"
	kindClusterRole        = "ClusterRole"
	kindRoleBinding        = "RoleBinding"
	kindClusterRoleBinding = "ClusterRoleBinding"
	kindList               = "List"

	subjectUser           = "User"
	subjectGroup          = "Group"
	subjectServiceAccount = "ServiceAccount"
)

// Policy is a set of Role, ClusterRole, RoleBinding and ClusterRoleBinding
// objects. Build one with LoadPolicy or ParsePolicy; the zero Policy and a
// nil *Policy allow nothing. A Policy is never modified after parsing.
type Policy struct {
	roles        map[nsName]*role
	clusterRoles map[string]*clusterRole
	// roleBindings are keyed by namespace, each slice in file order.
	roleBindings map[string][]*binding
	// clusterRoleBindings are in file order.
	clusterRoleBindings []*binding
}

type nsName struct{ namespace, name string }

type role struct {
	namespace, name string
	rules           []policyRule
}

type clusterRole struct {
	name        string
	labels      map[string]string
	rules       []policyRule // nil for an aggregated role
	aggregation *aggregationRule
	// sources are, for an aggregated role, the non-aggregated ClusterRoles
	// whose rules it has: see aggregate.
	sources []*clusterRole
}

type binding struct {
	kind      string // kindRoleBinding or kindClusterRoleBinding
	namespace string // empty for a ClusterRoleBinding
	name      string
	roleRef   roleRef
	subjects  []subject
}

// The types below mirror k8s.io/api/rbac/v1 field for field, so that YAML
// written for kubectl decodes unchanged.

type document struct {
	APIVersion      string           `yaml:"apiVersion"`
	Kind            string           `yaml:"kind"`
	Metadata        objectMeta       `yaml:"metadata"`
	Rules           []policyRule     `yaml:"rules"`
	AggregationRule *aggregationRule `yaml:"aggregationRule"`
	Subjects        []subject        `yaml:"subjects"`
	RoleRef         *roleRef         `yaml:"roleRef"`
	Items           []document       `yaml:"items"`
}

// objectMeta lists every field of metav1.ObjectMeta so that objects
// exported with `kubectl get -o yaml` load; only names and labels matter.
type objectMeta struct {
	Name                       string            `yaml:"name"`
	GenerateName               string            `yaml:"generateName"`
	Namespace                  string            `yaml:"namespace"`
	Labels                     map[string]string `yaml:"labels"`
	Annotations                map[string]string `yaml:"annotations"`
	SelfLink                   any               `yaml:"selfLink"`
	UID                        any               `yaml:"uid"`
	ResourceVersion            any               `yaml:"resourceVersion"`
	Generation                 any               `yaml:"generation"`
	CreationTimestamp          any               `yaml:"creationTimestamp"`
	DeletionTimestamp          any               `yaml:"deletionTimestamp"`
	DeletionGracePeriodSeconds any               `yaml:"deletionGracePeriodSeconds"`
	OwnerReferences            any               `yaml:"ownerReferences"`
	Finalizers                 any               `yaml:"finalizers"`
	ManagedFields              any               `yaml:"managedFields"`
}

type policyRule struct {
	Verbs           []string `yaml:"verbs"`
	APIGroups       []string `yaml:"apiGroups"`
	Resources       []string `yaml:"resources"`
	ResourceNames   []string `yaml:"resourceNames"`
	NonResourceURLs []string `yaml:"nonResourceURLs"`
}

type aggregationRule struct {
	ClusterRoleSelectors []labelSelector `yaml:"clusterRoleSelectors"`
}

type labelSelector struct {
	MatchLabels      map[string]string     `yaml:"matchLabels"`
	MatchExpressions []selectorRequirement `yaml:"matchExpressions"`
}

type selectorRequirement struct {
	Key      string   `yaml:"key"`
	Operator string   `yaml:"operator"`
	Values   []string `yaml:"values"`
}

type subject struct {
	Kind      string `yaml:"kind"`
	APIGroup  string `yaml:"apiGroup"`
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

type roleRef struct {
	APIGroup string `yaml:"apiGroup"`
	Kind     string `yaml:"kind"`
	Name     string `yaml:"name"`
}

// LoadPolicy reads a policy file: see ParsePolicy. Errors name the file and
// the document.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load RBAC policy: %w", err)
	}
	defer f.Close()
	p, err := parsePolicy(f)
	if err != nil {
		return nil, fmt.Errorf("load RBAC policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy reads a YAML stream of rbac.authorization.k8s.io/v1 Role,
// ClusterRole, RoleBinding and ClusterRoleBinding objects, separated by
// "---", as kubectl apply -f takes them. A document may also be a v1 List
// whose items are such objects, as `kubectl get -o yaml` writes. Empty
// documents are skipped.
//
// Errors name the document by its 1-based position in the stream (empty
// documents count), the List item likewise, and the object's kind and name.
func ParsePolicy(r io.Reader) (*Policy, error) {
	p, err := parsePolicy(r)
	if err != nil {
		return nil, fmt.Errorf("parse RBAC policy: %w", err)
	}
	return p, nil
}

// location names a document, or an item in a List document.
type location struct {
	doc, item int // 1-based; item 0 means the document itself
}

func (l location) String() string {
	if l.item == 0 {
		return fmt.Sprintf("document %d", l.doc)
	}
	return fmt.Sprintf("document %d, item %d", l.doc, l.item)
}

func parsePolicy(r io.Reader) (*Policy, error) {
	b := builder{
		p: &Policy{
			roles:        make(map[nsName]*role),
			clusterRoles: make(map[string]*clusterRole),
			roleBindings: make(map[string][]*binding),
		},
		seen: make(map[objectKey]location),
	}
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	for n := 1; ; n++ {
		var doc *document
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		loc := location{doc: n}
		if err != nil {
			return nil, fmt.Errorf("%v: %w", loc, flattenYAMLError(err))
		}
		if doc == nil {
			continue // empty document
		}
		if doc.Kind == kindList {
			if err := b.addList(loc, doc); err != nil {
				return nil, err
			}
			continue
		}
		if err := b.add(loc, doc); err != nil {
			return nil, err
		}
	}
	b.p.aggregate()
	return b.p, nil
}

// flattenYAMLError puts the several lines of a *yaml.TypeError on one, and
// words "field x not found in type rbac.document" for users.
func flattenYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, msg := range te.Errors {
		// "line N: field F not found in type T"
		if line, rest, ok := strings.Cut(msg, ": field "); ok {
			if field, _, ok := strings.Cut(rest, " not found in type "); ok {
				msg = line + ": unknown field " + field
			}
		}
		msgs[i] = msg
	}
	return fmt.Errorf("yaml: %s", strings.Join(msgs, "; "))
}

type objectKey struct {
	kind string
	nsName
}

func (k objectKey) String() string {
	switch {
	case k.name == "":
		return k.kind
	case k.namespace == "":
		return fmt.Sprintf("%s %q", k.kind, k.name)
	default:
		return fmt.Sprintf("%s %q", k.kind, k.namespace+"/"+k.name)
	}
}

// builder collects objects into a Policy.
type builder struct {
	p    *Policy
	seen map[objectKey]location
}

func (b *builder) addList(loc location, doc *document) error {
	if doc.APIVersion != "v1" {
		return fmt.Errorf("%v: List has apiVersion %q, want \"v1\"", loc, doc.APIVersion)
	}
	if doc.Rules != nil || doc.AggregationRule != nil || doc.Subjects != nil || doc.RoleRef != nil {
		return fmt.Errorf("%v: List may hold only apiVersion, kind, metadata and items", loc)
	}
	for i := range doc.Items {
		item := &doc.Items[i]
		iloc := location{doc: loc.doc, item: i + 1}
		if item.Kind == kindList {
			return fmt.Errorf("%v: a List inside a List is not supported", iloc)
		}
		if err := b.add(iloc, item); err != nil {
			return err
		}
	}
	return nil
}

// add validates one object and adds it to the policy.
func (b *builder) add(loc location, doc *document) error {
	switch doc.Kind {
	case kindRole, kindClusterRole, kindRoleBinding, kindClusterRoleBinding:
	case "":
		return fmt.Errorf("%v: kind is missing, want Role, ClusterRole, RoleBinding, ClusterRoleBinding or List", loc)
	default:
		return fmt.Errorf("%v: unknown kind %q (apiVersion %q), want Role, ClusterRole, RoleBinding, ClusterRoleBinding or List",
			loc, doc.Kind, doc.APIVersion)
	}
	namespaced := doc.Kind == kindRole || doc.Kind == kindRoleBinding
	key := objectKey{kind: doc.Kind, nsName: nsName{name: doc.Metadata.Name}}
	if namespaced {
		// The API server clears metadata.namespace of cluster-scoped
		// objects, so it is ignored for them.
		key.namespace = doc.Metadata.Namespace
	}

	var errs fieldErrors
	if doc.APIVersion != apiVersion {
		errs.add("apiVersion", "is %q, want %q", doc.APIVersion, apiVersion)
	}
	validateName(&errs, "metadata.name", doc.Metadata.Name)
	if namespaced && doc.Metadata.Namespace == "" {
		errs.add("metadata.namespace", "is required for a %s", doc.Kind)
	}
	switch doc.Kind {
	case kindRole, kindClusterRole:
		validateRole(&errs, doc)
	case kindRoleBinding, kindClusterRoleBinding:
		validateBinding(&errs, doc)
	}
	if err := errs.err(); err != nil {
		return fmt.Errorf("%v (%v): %w", loc, key, err)
	}

	if prev, ok := b.seen[key]; ok {
		return fmt.Errorf("%v: %v is already defined in %v", loc, key, prev)
	}
	b.seen[key] = loc

	switch doc.Kind {
	case kindRole:
		b.p.roles[key.nsName] = &role{namespace: key.namespace, name: key.name, rules: doc.Rules}
	case kindClusterRole:
		b.p.clusterRoles[key.name] = &clusterRole{
			name:        key.name,
			labels:      doc.Metadata.Labels,
			rules:       doc.Rules,
			aggregation: doc.AggregationRule,
		}
	case kindRoleBinding:
		b.p.roleBindings[key.namespace] = append(b.p.roleBindings[key.namespace], &binding{
			kind:      doc.Kind,
			namespace: key.namespace,
			name:      key.name,
			roleRef:   *doc.RoleRef,
			subjects:  doc.Subjects,
		})
	case kindClusterRoleBinding:
		b.p.clusterRoleBindings = append(b.p.clusterRoleBindings, &binding{
			kind:     doc.Kind,
			name:     key.name,
			roleRef:  *doc.RoleRef,
			subjects: doc.Subjects,
		})
	}
	return nil
}

// fieldErrors collects validation errors of one object.
type fieldErrors []string

func (e *fieldErrors) add(field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + " " + msg
	}
	*e = append(*e, msg)
}

func (e fieldErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	return errors.New(strings.Join(e, "; "))
}

// validateName applies the API server's minimal name rules for RBAC
// objects (path.IsValidPathSegmentName).
func validateName(errs *fieldErrors, field, name string) {
	switch {
	case name == "":
		errs.add(field, "is required")
	case name == "." || name == "..":
		errs.add(field, "may not be %q", name)
	case strings.ContainsAny(name, "/%"):
		errs.add(field, "%q may not contain '/' or '%%'", name)
	}
}

// validateRole follows ValidateRole and ValidateClusterRole in
// k8s.io/kubernetes pkg/apis/rbac/validation.
func validateRole(errs *fieldErrors, doc *document) {
	if doc.Subjects != nil || doc.RoleRef != nil || doc.Items != nil {
		errs.add("", "a %s has no subjects, roleRef or items", doc.Kind)
	}
	namespaced := doc.Kind == kindRole
	for i, r := range doc.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		if len(r.Verbs) == 0 {
			errs.add(field+".verbs", "must contain at least one value")
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs.add(field+".nonResourceURLs", "are not allowed in a Role")
			}
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				errs.add(field+".nonResourceURLs", "may not be combined with apiGroups, resources or resourceNames")
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			errs.add(field+".apiGroups", "must contain at least one value (\"\" is the core group)")
		}
		if len(r.Resources) == 0 {
			errs.add(field+".resources", "must contain at least one value")
		}
		if len(r.ResourceNames) > 0 && len(r.Resources) > 1 {
			errs.add(field+".resourceNames", "cannot apply to more than one resource")
		}
	}
	if doc.AggregationRule != nil {
		if namespaced {
			errs.add("aggregationRule", "is allowed only in a ClusterRole")
		}
		for i, sel := range doc.AggregationRule.ClusterRoleSelectors {
			validateSelector(errs, fmt.Sprintf("aggregationRule.clusterRoleSelectors[%d]", i), sel)
		}
	}
}

// validateSelector follows metav1.LabelSelectorAsSelector, which the
// aggregation controller uses.
func validateSelector(errs *fieldErrors, field string, sel labelSelector) {
	for i, req := range sel.MatchExpressions {
		f := fmt.Sprintf("%s.matchExpressions[%d]", field, i)
		if req.Key == "" {
			errs.add(f+".key", "is required")
		}
		switch req.Operator {
		case "In", "NotIn":
			if len(req.Values) == 0 {
				errs.add(f+".values", "must be non-empty for operator %s", req.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(req.Values) > 0 {
				errs.add(f+".values", "must be empty for operator %s", req.Operator)
			}
		default:
			errs.add(f+".operator", "%q is not one of In, NotIn, Exists, DoesNotExist", req.Operator)
		}
	}
}

// validateBinding follows ValidateRoleBinding and
// ValidateClusterRoleBinding in k8s.io/kubernetes pkg/apis/rbac/validation,
// after the defaulting in pkg/apis/rbac/v1 (an empty roleRef.apiGroup, and
// an empty apiGroup of a User or Group subject, mean the RBAC group).
func validateBinding(errs *fieldErrors, doc *document) {
	if doc.Rules != nil || doc.AggregationRule != nil || doc.Items != nil {
		errs.add("", "a %s has no rules, aggregationRule or items", doc.Kind)
	}
	namespaced := doc.Kind == kindRoleBinding
	if doc.RoleRef == nil {
		errs.add("roleRef", "is required")
	} else {
		ref := doc.RoleRef
		if ref.APIGroup == "" {
			ref.APIGroup = groupName
		}
		if ref.APIGroup != groupName {
			errs.add("roleRef.apiGroup", "is %q, want %q", ref.APIGroup, groupName)
		}
		switch {
		case ref.Kind == kindClusterRole:
		case ref.Kind == kindRole && namespaced:
		case ref.Kind == "" && namespaced:
			errs.add("roleRef.kind", "is required, want Role or ClusterRole")
		case ref.Kind == "":
			errs.add("roleRef.kind", "is required, want ClusterRole")
		case namespaced:
			errs.add("roleRef.kind", "is %q, want Role or ClusterRole", ref.Kind)
		default:
			errs.add("roleRef.kind", "is %q; a ClusterRoleBinding can refer only to a ClusterRole", ref.Kind)
		}
		validateName(errs, "roleRef.name", ref.Name)
	}
	for i := range doc.Subjects {
		s := &doc.Subjects[i]
		field := fmt.Sprintf("subjects[%d]", i)
		if s.Name == "" {
			errs.add(field+".name", "is required")
		}
		switch s.Kind {
		case subjectUser, subjectGroup:
			if s.APIGroup == "" {
				s.APIGroup = groupName
			}
			if s.APIGroup != groupName {
				errs.add(field+".apiGroup", "is %q, want %q for a %s", s.APIGroup, groupName, s.Kind)
			}
		case subjectServiceAccount:
			if s.APIGroup != "" {
				errs.add(field+".apiGroup", "is %q, want \"\" for a ServiceAccount", s.APIGroup)
			}
			if !namespaced && s.Namespace == "" {
				errs.add(field+".namespace", "is required for a ServiceAccount in a ClusterRoleBinding")
			}
		case "":
			errs.add(field+".kind", "is required, want User, Group or ServiceAccount")
		default:
			errs.add(field+".kind", "is %q, want User, Group or ServiceAccount", s.Kind)
		}
	}
}

// aggregate finds the sources of aggregated ClusterRoles. The
// clusterrole-aggregation controller sets such a role's rules to the union
// of the rules of the other ClusterRoles that match any of its selectors;
// when one of those is itself aggregated, its rules are in turn its own
// union. Starting every aggregated role from no rules and repeating until
// nothing changes, this gives each aggregated role the rules of the
// non-aggregated ClusterRoles it reaches through matching aggregated roles
// (the least fixed point, which also settles cycles). Rather than copy
// rules, which grow with the product of roles and rules, a role keeps
// pointers to those sources. Duplicate rules, which the controller drops,
// would not change any decision.
func (p *Policy) aggregate() {
	all := make([]*clusterRole, 0, len(p.clusterRoles))
	for _, cr := range p.clusterRoles {
		all = append(all, cr)
	}
	slices.SortFunc(all, func(a, b *clusterRole) int { return strings.Compare(a.name, b.name) })

	// selected[i] are the indexes in all of the roles that all[i]'s
	// selectors match, in name order.
	selected := make([][]int, len(all))
	for i, a := range all {
		if a.aggregation == nil {
			continue
		}
		for j, c := range all {
			if j != i && a.aggregation.selects(c.labels) {
				selected[i] = append(selected[i], j)
			}
		}
	}
	// A breadth-first search from each aggregated role; seen[j] == i+1
	// marks all[j] as seen in the search from all[i].
	seen := make([]int, len(all))
	var queue []int
	for i, a := range all {
		if a.aggregation == nil {
			continue
		}
		a.rules = nil // replaced by the controller
		seen[i] = i + 1
		queue = append(queue[:0], i)
		for len(queue) > 0 {
			x := queue[0]
			queue = queue[1:]
			for _, j := range selected[x] {
				if seen[j] == i+1 {
					continue
				}
				seen[j] = i + 1
				if all[j].aggregation != nil {
					queue = append(queue, j)
				} else {
					a.sources = append(a.sources, all[j])
				}
			}
		}
	}
}

// selects reports whether any selector matches labels.
func (a *aggregationRule) selects(labels map[string]string) bool {
	for _, sel := range a.ClusterRoleSelectors {
		if sel.matches(labels) {
			return true
		}
	}
	return false
}

// matches reports whether labels satisfy the selector, as a selector from
// metav1.LabelSelectorAsSelector would: an empty selector matches
// everything.
func (s labelSelector) matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, req := range s.MatchExpressions {
		got, ok := labels[req.Key]
		switch req.Operator {
		case "In":
			if !ok || !slices.Contains(req.Values, got) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(req.Values, got) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false // refused when parsing
		}
	}
	return true
}
