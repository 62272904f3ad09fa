// Package webhook is `meshext webhook`: a validating admission webhook for
// Kuma's kinds, so `kubectl apply` of an invalid resource fails with the
// messages `meshext validate` prints (Kuma's), before anything is stored.
// The object is read exactly as `meshext run --source kubernetes` reads it
// (kube.Document, kube.ParseObject) and checked by controller/validate;
// the answer has Kuma's shape (status 422, reason Invalid, one cause per
// field, message "field: message; field: message").
package webhook

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/source/kube"
	"github.com/meshext/meshext/controller/validate"
)

// Path is where the webhook is served.
const Path = "/validate"

// maxReviewSize bounds a request body: an AdmissionReview holds the object
// (etcd's limit is 1.5 MiB) and its old version.
const maxReviewSize = 4 << 20

// Handler answers AdmissionReview v1 requests.
type Handler struct {
	// Zone is the local zone name, as `meshext run --zone`.
	Zone string
	Log  *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewSize))
	if err != nil {
		http.Error(w, "request body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview v1 request", http.StatusBadRequest)
		return
	}
	resp := h.Review(review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&out)
}

// Review decides one request.
func (h *Handler) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	kind := resource.Kind(req.Kind.Kind)
	if _, ok := kube.KindInfoOf(kind); !ok || req.Kind.Group != kube.Group || req.Operation == admissionv1.Delete {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(req.Object.Raw); err != nil {
		return denied(req, http.StatusBadRequest, metav1.StatusReasonBadRequest, "cannot read the object: "+err.Error(), nil)
	}
	if u.GetNamespace() == "" {
		u.SetNamespace(req.Namespace) // a create may leave it to the request
	}
	errs := h.Check(kind, u)
	if len(errs) == 0 {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var msgs []string
	var causes []metav1.StatusCause
	for _, e := range errs {
		msg := e.Message
		if e.Field != "" {
			msg = e.Field + ": " + e.Message
		}
		msgs = append(msgs, msg)
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: e.Field, Message: e.Message})
	}
	if h.Log != nil {
		h.Log.Info("refused", "operation", req.Operation, "object", kube.Ref(kind, u.GetNamespace(), u.GetName()), "user", req.UserInfo.Username, "problems", len(errs))
	}
	return denied(req, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, strings.Join(msgs, "; "), causes)
}

// Check returns every problem of one object: parse errors (unknown fields,
// types) and Kuma's validation rules, as `meshext validate` reports them.
func (h *Handler) Check(kind resource.Kind, u *unstructured.Unstructured) []*resource.FieldError {
	ref := kube.Ref(kind, u.GetNamespace(), u.GetName())
	data, err := json.Marshal(kube.Document(kind, u))
	if err != nil {
		return []*resource.FieldError{{File: ref, Line: resource.NoLine, Message: err.Error()}}
	}
	objs, errs := kube.ParseObject(ref, data)
	if len(objs) != 1 {
		if len(errs) == 0 {
			errs = append(errs, &resource.FieldError{File: ref, Line: resource.NoLine, Message: "not a resource"})
		}
		return errs
	}
	set := &resource.Set{}
	if fe := set.Add(objs[0]); fe != nil {
		return append(errs, fe)
	}
	set.ComputeLabels(resource.Options{Zone: h.Zone})
	return append(errs, validate.ObjectWithOptions(objs[0], set, validate.Options{Zone: h.Zone})...)
}

func denied(req *admissionv1.AdmissionRequest, code int32, reason metav1.StatusReason, msg string, causes []metav1.StatusCause) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg,
			Details: &metav1.StatusDetails{Name: nameOf(req), Kind: req.Kind.Kind, Causes: causes},
		},
	}
}

func nameOf(req *admissionv1.AdmissionRequest) string {
	if req.Name != "" {
		return req.Name
	}
	var m struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(req.Object.Raw, &m)
	return m.Metadata.Name
}
