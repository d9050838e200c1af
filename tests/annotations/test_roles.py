import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotations.roles import Role, user_has_role

pytestmark = pytest.mark.django_db


def fresh(user):
    return get_user_model().objects.get(pk=user.pk)


def test_roles_follow_group_changes_at_once(clinician):
    # given a clinician whose role is cached
    assert user_has_role(fresh(clinician), Role.CLINICIAN)
    # when the group is removed (directly, as the admin site does)
    clinician.groups.clear()
    # then the next request sees it
    assert not user_has_role(fresh(clinician), Role.CLINICIAN)
    # and adding a group from the group's side is seen too
    Group.objects.get_or_create(name="researcher")[0].user_set.add(clinician)
    assert user_has_role(fresh(clinician), Role.RESEARCHER)


def test_a_deactivated_user_has_no_role(clinician):
    assert user_has_role(fresh(clinician), Role.CLINICIAN)
    get_user_model().objects.filter(pk=clinician.pk).update(is_active=False)
    assert not user_has_role(fresh(clinician), Role.CLINICIAN)


def test_a_new_user_never_inherits_a_cached_role(clinician):
    # given a cached clinician that is then deleted
    assert user_has_role(fresh(clinician), Role.CLINICIAN)
    pk = clinician.pk
    clinician.delete()
    # when a user without groups gets the same primary key
    newcomer = get_user_model().objects.create(pk=pk, username="newcomer")
    # then it has no role
    assert not user_has_role(fresh(newcomer), Role.CLINICIAN)


def test_role_check_costs_no_query_once_cached(clinician, django_assert_num_queries):
    user_has_role(fresh(clinician), Role.CLINICIAN)
    again = fresh(clinician)
    with django_assert_num_queries(0):
        assert user_has_role(again, Role.CLINICIAN)
        assert not user_has_role(again, Role.RESEARCHER)


@pytest.mark.parametrize(
    ("role", "annotator", "staff_side"),
    [
        ("clinician", True, False),
        ("participant", True, False),
        ("researcher", False, True),
        ("admin", False, True),
    ],
)
def test_each_role_is_an_annotator_or_staff_never_both(role, annotator, staff_side):
    from annotations.roles import user_is_annotator, user_is_researcher_or_admin
    from annotations.services.users import user_create_or_update

    user = user_create_or_update(username=f"u-{role}", role=Role(role), password="x" * 12)
    assert user_is_annotator(fresh(user)) is annotator
    assert user_is_researcher_or_admin(fresh(user)) is staff_side
