from django.urls import path

from studies import views

app_name = "studies"

# Participant pages live under s/<token>/: the token is the link's only handle.
urlpatterns = [
    path("s/<str:token>/", views.study_entry, name="entry"),
    path("s/<str:token>/consent/", views.study_consent, name="consent"),
    path("s/<str:token>/go/", views.study_resume, name="resume"),
    path("s/<str:token>/instructions/", views.study_instructions, name="instructions"),
    path("s/<str:token>/practice/<int:number>/", views.study_practice, name="practice"),
    path("s/<str:token>/items/<int:number>/", views.study_item, name="item"),
    path("s/<str:token>/steps/", views.study_steps, name="steps"),
    path("s/<str:token>/steps/<int:position>/", views.study_steps, name="step"),
    path("s/<str:token>/questionnaire/", views.study_questionnaire, name="questionnaire"),
    path("s/<str:token>/done/", views.study_done, name="done"),
    path("sign-in/<str:token>/", views.sign_in_page, name="sign-in"),
    # admins
    path("people/new/", views.people_page, name="people"),
    path("studies/<slug:slug>/", views.study_page, name="study"),
    path("studies/<slug:slug>/participants.csv", views.study_csv, name="study-csv"),
    path("studies/<slug:slug>/links/new/", views.study_link_new, name="link-new"),
    path("study-links/<int:link_id>/close/", views.study_link_close, name="link-close"),
]
